"""Encrypted PII sink: per-subject data keys (envelope encryption), the segment store, the audit log."""
