"""The operator's web view: a static single-page app at ``/ui`` and the live read models it needs."""
