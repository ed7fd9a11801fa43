"""Worker processes: accept on the shared sockets and serve clients (start with main.py)."""
