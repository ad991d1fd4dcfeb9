"""Speech-to-text backends behind one interface. The API imports only the light parts (model names
and languages, to validate a submit); a backend (torch, CTranslate2) is imported when a worker loads
a model of it (registry.py)."""
