"""The store: the schema, every SQL statement, and the storage implementations."""
