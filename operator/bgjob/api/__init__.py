"""The BackgroundJob API: models, validation rules and CRD generation."""
