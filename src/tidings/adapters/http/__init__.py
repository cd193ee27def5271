"""The HTTP adapter: Brevo-compatible ingestion routes, tracker endpoints and JS tracker."""
