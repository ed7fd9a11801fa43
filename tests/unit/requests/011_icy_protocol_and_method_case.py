request = {"method": "STATS", "path": "/admin/stats", "protocol": "ICY", "version": "1.0", "headers": ()}
