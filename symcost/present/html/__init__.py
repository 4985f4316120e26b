"""A self-contained, offline, interactive HTML report page."""
