"""Operator actions on the encrypted PII (decrypt, flag, erase), each recorded in the query audit log."""
