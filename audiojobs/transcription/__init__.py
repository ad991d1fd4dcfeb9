"""Speech-to-text backends behind one interface; imported by workers only, never by the API."""
