"""The ingest service: trades come in from feeds (or the replay exchange) and go to rings, the
engine and the store.

Subpackages: ``feeds`` (venue-market protocols and the websocket client), ``store`` (the
store interface and its backends), ``replay`` (the local fake exchange), ``bus`` (the
optional live bus to dashboard workers), ``process`` (process-level concerns); ``runtime``
wires them together.
"""
