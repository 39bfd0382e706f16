"""The dashboard's pages, one ``dash.register_page`` module (or subpackage) per URL; they ask
the typed facade, never rings or the store.

Dash imports every module here that calls ``register_page`` (it skips files starting with
``_``, like this one); see ``dashapp.create_app``.
"""
