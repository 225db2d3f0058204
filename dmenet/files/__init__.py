"""File utilities: reading photos, masks and maps in every format the project meets; atomic writes; figures."""
