"""One router per resource; `coordinator.api.app.create_app` includes them all."""
