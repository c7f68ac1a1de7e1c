"""Read benchmark runs back from MLflow and publish them: tables (md/csv/json), figures, a static page."""
