"""Matting-Laplacian propagation of sparse estimates to a dense map, shared by Park'17 and Zhuo & Sim.

``laplacian`` builds the matting Laplacian straight from its 25 stencil diagonals; ``solver`` sets up
(L + λ·D) once per guide and known mask and solves it (multigrid-preconditioned CG to a tolerance, or
the direct reference solver).
"""
