"""SMART App Launch 2.2 authorization server (authlib core + joserfc)."""
