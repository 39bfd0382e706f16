"""The markets page: the page (``page.py``) and what one 500 ms refresh sends
(``marketsview``)."""
