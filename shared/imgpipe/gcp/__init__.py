"""Google Cloud adapters: GCS blobs, Firestore state, Cloud Tasks queue, OIDC verification.
Imported only when `IMGPIPE_BACKEND=gcp` (or by the Cloud Functions entry points)."""
