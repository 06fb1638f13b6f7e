"""What a user declares: model.yaml (:mod:`.spec`), BuildProfiles and where they are found
(:mod:`.profiles`), model folders and hub sources (:mod:`.sources`), sandboxed Jinja
(:mod:`.templating`). Reads files; runs nothing.
"""
