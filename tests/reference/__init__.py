"""Reference implementations the compiled event path is checked against in tests only."""
