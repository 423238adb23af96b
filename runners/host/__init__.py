"""Runner hosts: the Celery task that runs one stage (`task`), its channel back to the control
plane (`channel`, `keys`), its settings (`settings`) and the worker entry point (`worker`).

Runner hosts execute model code from the internet, so this package holds no GitHub credentials,
never imports `bot/`, and reaches Redis only as its pool's ACL user (see `keys` for what that user
may touch)."""
