"""The S3 port: an HTTP/1.1 server speaking the S3 REST protocol over Store's services."""
