"""The survey itself: signed and short links, and the texts in eleven languages.

Below storage: nothing here opens a database connection of its own (``short_links`` takes the
caller's), so the dispatcher, the survey page and the tests share one definition of a link.
"""
