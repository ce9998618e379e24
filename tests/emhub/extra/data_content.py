"""Test facility's EMhub extras: the create-session form's content (EMhub 1.0.2 leaves it to
each facility). It offers what ``config:sessions`` lists: the OTF workflows and hosts, and
the transfer host of the booking's microscope."""


def register_content(dc):
    @dc.content
    def create_session_form(**kwargs):
        dm = dc.app.dm
        booking = dm.get_booking_by(id=int(kwargs["booking_id"]))
        config = dm.get_config("sessions")
        mic = booking.resource.name
        otf = config.get("otf", {})
        return {
            "booking": booking,
            "session_name": "",
            "transfer_host": config.get("raw", {}).get("hosts_default", {}).get(mic, ""),
            "otf_hosts": otf.get("hosts", []),
            "otf_host_default": otf.get("hosts_default", {}).get(mic, ""),
            "workflows": otf.get("workflows", []),
            "workflow_default": otf.get("workflow_default", ""),
            "acquisition": config.get("acquisition", {}).get(mic, {}),
        }
