"""Who may do what: API keys with roles, checked on every interface the sink serves."""
