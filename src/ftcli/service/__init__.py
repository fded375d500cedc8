"""Backend-neutral operations over the official `openai` SDK: they return data and never print, prompt or exit.

Usable from Python without the CLI:

    from ftcli.service.settings import resolve_settings
    from ftcli.service.client import make_client
    from ftcli.service import jobs

    client = make_client(resolve_settings())
    for job in jobs.list_jobs(client, limit=5):
        print(job.id, job.status)
"""
