"""What a defocus map is for: all-in-focus images, defocus magnification, depth and binary blur masks (APPLICATIONS.md)."""
