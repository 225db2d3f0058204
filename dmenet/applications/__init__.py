"""What a defocus map is for: applications built on a σ map (APPLICATIONS.md)."""
