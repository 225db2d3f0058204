"""The four networks of DMENet: B (blur estimation), D (domain discriminator), S (sharpness), C (content)."""
