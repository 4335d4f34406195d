"""The HTTP doors, at a glance: `app` (the factory of `imgpipe serve`), `api` (the API
routes), `taskroutes` (the task targets), `console` (the operator's console and its static
files), `common` (error bodies and request parsing shared by every app, the Cloud Functions'
included) and `localqueue` (the local queue connected to the task doors)."""

from imgpipe.http.app import create_app

__all__ = ["create_app"]
