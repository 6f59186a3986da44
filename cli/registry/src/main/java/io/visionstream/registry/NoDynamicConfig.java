package io.visionstream.registry;

import io.apicurio.common.apps.config.DynamicConfigPropertyList;
import java.util.List;
import javax.enterprise.context.ApplicationScoped;
import javax.enterprise.inject.Produces;

/**
 * The list of dynamic (runtime-editable) configuration properties. Apicurio's build extension that collects it
 * (apicurio-common-app-components-config-index-deployment) is not on Maven Central, so this build has none:
 * the registry's settings come from its configuration at start only.
 */
@ApplicationScoped
public class NoDynamicConfig {
    @Produces
    @ApplicationScoped
    DynamicConfigPropertyList dynamicConfigProperties() {
        return new DynamicConfigPropertyList(List.of());
    }
}
