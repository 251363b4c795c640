"""Azure IMDS emulator: many simulated VMs behind one HTTP server, plus a control API.

Modules, one job each: `versions` (api-versions and field gates), `schemas` (control
API bodies), `cluster` (VM identities), `model` (the simulation: events, life cycle,
incarnations; no HTTP), `documents` (rendering per api-version), `faults`,
`ratelimit`, `imds` (the IMDS request pipeline), `control` (the control router),
`app` (`build_app`), `server` (uvicorn with connection dropping), `cli`, and
`testing` (`running_emulator`). See README.md in this folder.
"""
