"""The database: models, engine and schema migrations."""
