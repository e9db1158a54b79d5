"""PII vault primitives shared by the worker and the store: crypto, data keys, the sealed snapshot store."""
