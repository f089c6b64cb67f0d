"""Operating the sidecar: health and readiness over HTTP, Prometheus metrics, logs, progress watch."""
