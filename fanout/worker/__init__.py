"""Worker processes: accept on the shared sockets and serve clients (see worker.py)."""
