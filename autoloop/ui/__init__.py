"""The read-only web dashboard (`autoloop ui`)."""
