"""The Hugging Face Hub: search and details (client), resumable verified downloads (download), what
the Hub returns as data (models), and its errors as sentences (errors)."""
