"""Operations: health and readiness (`health`), Prometheus metrics (`metrics`), start-up checks and
`python app.py check` (`checks`), and logging with every secret redacted (`logs`)."""
