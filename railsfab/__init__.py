"""railsfab: deploy Rails apps to Debian/Ubuntu hosts (Nginx + Unicorn/Puma, ALB, S3)."""

__version__ = "0.1.0"
