"""A local GitHub stand-in: a real HTTP server with in-memory state and GitHub's response shapes.

- `state.py`   : the in-memory world (apps, installations, repos, issues, comments, files) + faults
- `shapes.py`  : GitHub JSON shapes (checked against githubkit's models in tests/intake)
- `app.py`     : the FastAPI app; `ROUTE_MODULES` lists route modules (the extension point)
- `core_api.py`: app auth, installations, issues, comments, reactions, permissions, contents
- `server.py`  : run it with uvicorn on 127.0.0.1:<free port> in a thread; send signed webhooks
- `payloads.py`: real webhook payloads (tests/fixtures/github-webhooks) re-aimed at the stand-in's repos
"""
