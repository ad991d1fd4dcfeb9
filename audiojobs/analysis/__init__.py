"""Transcript analysis providers behind one interface, chosen per job by ``api_name``."""
