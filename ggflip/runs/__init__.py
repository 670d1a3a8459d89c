"""What every mode's run shares: model lifecycle events and the vocabulary guard."""
