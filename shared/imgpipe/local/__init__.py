"""Local adapters: filesystem blobs, SQLite state, and the SQLite task queue with its dispatcher."""
