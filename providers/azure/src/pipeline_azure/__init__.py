"""azure backend (see providers/azure)."""
