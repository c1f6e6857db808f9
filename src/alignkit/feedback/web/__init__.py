"""`alignkit label --web`: team labelling on a page in the browser.

``team`` (who labels what: tokens, assignment), ``desk`` (the labelling logic, thread-safe, no HTTP),
``app`` (the Starlette app: routes, tokens, security headers), ``server`` (set-up and uvicorn, Ctrl-C),
``static/`` (the page: plain HTML, CSS and JS, no build step). docs/label.md describes the page.
"""
