"""One router per module; ``api.app.ROUTERS`` lists the ones an app includes."""
