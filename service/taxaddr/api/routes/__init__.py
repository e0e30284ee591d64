"""The HTTP routes, one module per area; :func:`taxaddr.api.app.create_app` registers each.

Thin edges: a route checks the role, parses its parameters, calls one function of the
core (:mod:`taxaddr.disclosure`, :mod:`taxaddr.audit`, :mod:`taxaddr.oversight`,
:mod:`taxaddr.reports`) and renders what it returns.
"""
