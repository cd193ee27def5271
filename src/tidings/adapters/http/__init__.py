"""The HTTP adapter: Brevo-compatible ingestion routes, tracker endpoints and JS tracker."""

# Here, not in a route module, so `tidings import --url` can name them without loading FastAPI.
MODE_HEADER = "X-Tidings-Mode"  # Tidings' one extension to Brevo's API (docs/ingestion.md)
HISTORY = "history"  # stored as already processed: conditions see it, no workflow applies it
LIVE = "live"  # Brevo's behaviour, the default
