# nyc311-mail:local, a mail catcher for the local check built with no registry (deploy/docker.sh
# mail-image): Debian's aiosmtpd, the SMTP server the project's tests use, taking plain SMTP (no
# TLS, no AUTH) on 0.0.0.0:1025 and storing each message as one file of the Maildir
# /var/mail/catcher (new/). Point the dispatcher at it with SMTP_HOST=<its name>, SMTP_PORT=1025
# and SMTP_STARTTLS=false; read what arrived with `docker exec <container> ls
# /var/mail/catcher/new` or `docker cp`. A volume mounted at /var/mail/catcher must be a Maildir
# (cur/, new/, tmp/) or a fresh named volume, which starts as a copy of the image's.
FROM local/debian:bookworm

RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
       python3-aiosmtpd \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --no-create-home --home-dir /var/mail/catcher --uid 1025 catcher \
    && mkdir -p /var/mail/catcher/cur /var/mail/catcher/new /var/mail/catcher/tmp \
    && chown -R catcher: /var/mail/catcher

USER catcher
WORKDIR /var/mail/catcher
EXPOSE 1025
# The healthcheck to use in a compose file too: the server greets on port 1025.
HEALTHCHECK --interval=2s --timeout=5s --retries=15 \
    CMD ["python3", "-c", "import smtplib; smtplib.SMTP('127.0.0.1', 1025, timeout=5).quit()"]
# aiosmtpd stops on SIGINT (the default SIGTERM would wait for docker's timeout).
STOPSIGNAL SIGINT
CMD ["python3", "-m", "aiosmtpd", "-n", "-l", "0.0.0.0:1025", \
     "-c", "aiosmtpd.handlers.Mailbox", "/var/mail/catcher"]
