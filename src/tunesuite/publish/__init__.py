"""What a finished run publishes: its files (outputs), the model card and Hub upload (hub), a merged export."""
