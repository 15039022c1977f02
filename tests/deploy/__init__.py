"""The deployment files of deploy/: the image, the compose file, the systemd unit."""
