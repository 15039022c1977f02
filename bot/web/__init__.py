"""The web server: ingestion endpoints and health, served beside polling in one process."""
