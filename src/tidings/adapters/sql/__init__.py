"""The SQL store on SQLite or PostgreSQL (`store.SqlStore`), its tables and its migrations."""
