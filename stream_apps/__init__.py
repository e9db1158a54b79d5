"""Faust stream apps: validate, enrich, sample and PII-route lineage events (see ``app.create_app``)."""
