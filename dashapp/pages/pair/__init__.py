"""The pair page: the page (``page.py``), what one panel shows (``pairview``), what one
500 ms refresh sends (``pairlive``) and the pair builds off the request path
(``pairbuilds``)."""
